"""BackdoorBench (Wu et al., NeurIPS 2022 Datasets and Benchmarks), CIFAR-10 with PreAct-ResNet-18,
10 % poisoning: the attack success rate (ASR, the share of triggered test images sent to the target
class) of two backdoors before and after five defences. BadNets' trigger is a patch (our content keys
are BadNets-style: real images relabelled), Blended's an image blended into the input (our noise keys
are Blended-style). The numbers are BackdoorBench's own result table (backdoorbench.github.io,
``static/data/results_old.csv``, the NeurIPS 2022 leaderboard), which also gives the first four the
comparison's issue quoted. Lukas et al. (S&P 2022) summarise the watermark side: no single attack
removed every watermark they tested; combined attacks removed all."""

ASR = {
    "badnets": {"none": 0.9503, "fine-tune": 0.0148, "fine-pruning": 0.5713, "neural-cleanse": 0.0127, "nad": 0.0214,
                "anp": 0.0073},
    "blended": {"none": 0.9992, "fine-tune": 0.9611, "fine-pruning": 0.9926, "neural-cleanse": 0.9992, "nad": 0.9769,
                "anp": 0.0219},
}
SETTING = "CIFAR-10, PreAct-ResNet-18, 10 % poisoning (BackdoorBench)"
