"""BackdoorBench (Wu et al., NeurIPS 2022 Datasets and Benchmarks), CIFAR-10 with PreAct-ResNet-18:
the attack success rate (ASR, the share of triggered test images sent to the target class) of two
backdoors before and after three defences, as the comparison chapter's issue quotes them. BadNets'
trigger is a patch (our content keys are BadNets-style: real images relabelled), Blended's an image
blended into the input (our noise keys are Blended-style). Lukas et al. (S&P 2022) summarise the
watermark side: no single attack removed every watermark they tested; combined attacks removed all."""

ASR = {
    "badnets": {"none": 0.9503, "fine-tune": 0.0148, "fine-pruning": 0.5713, "neural-cleanse": 0.0127},
    "blended": {"none": 0.9992, "fine-tune": 0.9611, "fine-pruning": 0.9926, "neural-cleanse": 0.9992},
}
SETTING = "CIFAR-10, PreAct-ResNet-18 (BackdoorBench)"
