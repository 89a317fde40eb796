"""Namba & Sakuma, AsiaCCS 2019: Table 1 (detection by both rules), Table 2 (watermark accuracy after
query modification and after pruning + fine-tuning) and the test accuracy of clean and proposal
models, per dataset (the Namba chapter and the comparison chapter use them)."""

TABLES = {
    "mnist": {"detect": {"test-gray": 1.0, "symbol": 1.0, "heart-gray": 1.0, "unrelated": 0.28, "noise": 0.49,
                         "afs": 0.23, "ds": 1.0},
              "qm": {"test-gray": 0.99, "symbol": 0.0007, "heart-gray": 0.96, "unrelated": 1.0, "noise": 1.0,
                     "afs": 1.0, "ds": 0.4},
              "pruning": {"test-gray": 0.0034, "symbol": 0.023, "heart-gray": 0.0020, "unrelated": 0.89,
                          "noise": 0.20, "afs": 1.0, "ds": 0.67},
              "test": {"clean": 0.996, "proposal": 0.992}},
    "cifar10": {"detect": {"test-gray": 0.98, "test-blue": 1.0, "symbol": 0.98, "heart-gray": 0.99, "heart-red": 0.98,
                           "unrelated": 0.27, "noise": 1.0, "afs": 1.0, "ds": 1.0},
                "qm": {"test-gray": 0.069, "test-blue": 0.021, "symbol": 0.017, "heart-gray": 0.021, "heart-red": 0.39,
                       "unrelated": 1.0, "noise": 0.014, "afs": 0.73, "ds": 0.23},
                "pruning": {"test-gray": 0.57, "test-blue": 0.73, "symbol": 0.30, "heart-gray": 0.99, "heart-red": 0.14,
                            "unrelated": 0.010, "noise": 0.070, "afs": 0.86, "ds": 0.30},
                "test": {"clean": 0.913, "proposal": 0.920}},
}
