"""Zhang et al., ASIACCS 2018: Table 1 (key accuracy on the trained and on new key samples) and
Table 2 (test accuracy), per dataset and key kind."""

TABLES = {
    "mnist": {"trained": {"content": 1.0, "unrelated": 1.0, "noise": 1.0},
              "new": {"content": 1.0, "unrelated": 1.0, "noise": 0.9942},
              "test": {"none": 0.9928, "content": 0.9946, "unrelated": 0.9943, "noise": 0.9941}},
    # Table 1(b)'s layout was lost in extraction; this is our reading of its six numbers
    "cifar10": {"trained": {"content": 0.9993, "unrelated": 1.0, "noise": 0.9986},
                "new": {"content": 0.986, "unrelated": 1.0, "noise": 0.941},
                "test": {"none": 0.7849, "content": 0.786, "unrelated": 0.7841, "noise": 0.7812}},
}
