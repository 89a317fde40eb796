"""Aramoon, Chen & Qu, MLSys 2021 (GradSigns): the numbers its chapter compares with, per benchmark."""

# Table 2: test-accuracy change of GS-N against the baseline
TABLE2 = {"cifar10": {16: 0.901 - 0.912, 32: 0.904 - 0.912, 64: 0.905 - 0.912},
          "svhn": {16: 0.955 - 0.961, 32: 0.957 - 0.961, 64: 0.953 - 0.961}}
LAMBDA = 0.3  # λ: the authors' code's default (the paper gives none)
# Tables 3 (8-bit weights) and 4 (FGSM adversarial fine-tuning): wrong bits of 64 and the accuracy change
WRONG_BITS = {"Table 3": {"cifar10": 2, "svhn": 0}, "Table 4": {"cifar10": 5, "svhn": 0}}
ACCURACY_CHANGE = {"Table 3": {"cifar10": -0.0142, "svhn": -0.006}, "Table 4": {"cifar10": -0.0258, "svhn": -0.0022}}
# Table 5: the forger's bit-extraction success rate per images per class (SVHN)
FORGER_BESR = {256: 0.57, 512: 0.60, 1024: 0.62, 2048: 0.68, 4096: 1.0}
