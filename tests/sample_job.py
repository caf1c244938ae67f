"""The job of the public API's sample output, as the agents' events that produce it."""

from __future__ import annotations

import copy

SAMPLE_JOB = {
    "id": "8252d813-e5fb-4dad-b397-cb518fd0fc41",
    "queueName": "jacky-test",
    "createdAt": "2025-05-15T05:29:06.354967467Z",
    "updatedAt": "2025-05-15T06:35:48.011660015Z",
    "status": "Succeeded",
    "nodeOid": "i-03d7eb4de55c4355f",
    "containerId": "6fc76e79d59123f6f35a7c9d7507885664d6983a64ebe231fa1391505a520c40",
    "spotProtCount": 1,
    "batchJobIds": ["8252d813-e5fb-4dad-b397-cb518fd0fc41"],
    "volumeIds": ["vol-022893f19655019e0"],
    "events": [
        {
            "timestamp": "2025-05-15T05:29:06.354967467Z",
            "eventType": "Job-Creating",
            "nodeOid": "i-0bf682f18f3cb557e",
            "containerId": "9098f44bfd84597ce82f13974ab8400b894a3595fdb51ec0ff5c835e4bf1fedf",
            "batchJobId": "8252d813-e5fb-4dad-b397-cb518fd0fc41",
        },
        {
            "timestamp": "2025-05-15T05:29:12.49788509Z",
            "eventType": "Volume-Created",
            "volumnId": "vol-022893f19655019e0",
        },
        {
            "timestamp": "2025-05-15T05:29:19.49788509Z",
            "eventType": "Volume-Attached",
            "volumnId": "vol-022893f19655019e0",
        },
        {"timestamp": "2025-05-15T05:29:20.49788509Z", "eventType": "Job-Created"},
        {"timestamp": "2025-05-15T05:29:20.675862549Z", "eventType": "Job-Running"},
        {
            "timestamp": "2025-05-15T05:55:06.194790675Z",
            "eventType": "Job-Checkpointing",
        },
        {
            "timestamp": "2025-05-15T05:55:06.894972615Z",
            "eventType": "Job-CheckpointSucceeded",
        },
        {
            "timestamp": "2025-05-15T06:00:22.278832037Z",
            "eventType": "Job-Restoring",
            "nodeOid": "i-03d7eb4de55c4355f",
            "containerId": "6fc76e79d59123f6f35a7c9d7507885664d6983a64ebe231fa1391505a520c40",
        },
        {
            "timestamp": "2025-05-15T06:01:26.010124985Z",
            "eventType": "Job-RestoreSucceeded",
        },
        {"timestamp": "2025-05-15T06:01:26.083797074Z", "eventType": "Job-Running"},
        {"timestamp": "2025-05-15T06:35:48.011660015Z", "eventType": "Job-Succeeded"},
    ],
}


def sample_job() -> dict:
    return copy.deepcopy(SAMPLE_JOB)
