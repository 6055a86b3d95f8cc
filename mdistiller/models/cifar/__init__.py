"""CIFAR-sized (32x32 input) backbones with mdistiller's names and state_dict layout."""
