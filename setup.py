"""vsmsvsr: PaddleGAN's video models (PP-MSVSR, DAIN, DeOldify, DeepRemaster) as VapourSynth filters."""
from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="vsmsvsr",
    version="0.1.0",
    description=__doc__.strip(),
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.12",
    packages=find_packages(include=["vsmsvsr", "vsmsvsr.*"]),
    install_requires=[
        "vapoursynth>=81",
        "numpy",
        "opencv-python-headless",
        "tqdm",
        "platformdirs",
        "vapoursynth-bestsource",
    ],
    extras_require={
        "cpu": ["paddlepaddle>=2.6", "openvino>=2024.0"],
        # paddlepaddle-gpu 2.6.2 is built for CUDA 11.8 + cuDNN 8.6 and declares no CUDA wheels:
        # these are they (loaded by vsmsvsr._paddle before Paddle is imported), so that a machine
        # with an NVIDIA driver needs nothing but pip.
        "gpu": ["paddlepaddle-gpu==2.6.2", "nvidia-cuda-runtime-cu11==11.8.*", "nvidia-cuda-nvrtc-cu11==11.8.*",
                "nvidia-cublas-cu11==11.11.*", "nvidia-cudnn-cu11==8.6.*", "nvidia-cufft-cu11==10.9.*",
                "nvidia-curand-cu11==10.3.*", "nvidia-cusolver-cu11==11.4.*", "nvidia-cusparse-cu11==11.7.*"],
        # chunks of a vsmsvsr-enhance job as Ray tasks (--ray)
        "ray": ["ray>=2.40"],
        "test": [
            "pytest>=7.3",  # tmp_path_retention_policy
            "scikit-image",
            "scikit-video",
            "ray>=2.40",  # the two-node Ray test (run in a loopback-only network namespace)
        ],
    },
    entry_points={"console_scripts": ["vsmsvsr=vsmsvsr.cli:main", "vsmsvsr-enhance=vsmsvsr.cli:enhance_main"]},
    classifiers=[
        "License :: OSI Approved :: Apache Software License",
        "Programming Language :: Python :: 3.12",
        "Topic :: Multimedia :: Video",
    ],
)
