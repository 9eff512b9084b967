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
        "gpu": ["paddlepaddle-gpu>=2.6"],
        "test": [
            "pytest",
            "scikit-image",
            "scikit-video",
        ],
    },
    entry_points={"console_scripts": ["vsmsvsr=vsmsvsr.cli:main", "vsmsvsr-enhance=vsmsvsr.cli:enhance_main"]},
    classifiers=[
        "License :: OSI Approved :: Apache Software License",
        "Programming Language :: Python :: 3.12",
        "Topic :: Multimedia :: Video",
    ],
)
