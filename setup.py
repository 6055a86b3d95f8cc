from setuptools import find_packages, setup

setup(
    name="mdistiller",
    version="0.2.0",
    description="Knowledge distillation benchmark compatible with megvii-research/mdistiller, "
    "with Wasserstein and optimal-transport distillers (WKD, WKL, KD2M, OT compression, WCoRD)",
    packages=find_packages(include=["mdistiller", "mdistiller.*"]),
    package_data={"mdistiller": ["reference/*.csv"]},
    python_requires=">=3.9",
    install_requires=[
        "torch>=2.1",
        "torchvision>=0.16",
        "yacs>=0.1.8",
        "tensorboardX>=2.4",
        "tqdm>=4.60",
        "numpy>=1.22",
        "scipy>=1.8",
        "scikit-learn>=1.0",
        "pot>=0.9",
        "pyyaml>=5.4",
    ],
    extras_require={
        "wandb": ["wandb>=0.15"],
        "plots": ["matplotlib>=3.5"],
        "test": ["pytest>=7", "pytest-timeout>=2"],
    },
)
