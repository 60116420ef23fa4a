"""Datasets and augmentation for chest X-ray lung segmentation."""

from .datasets import SPLITS, Sample, SegmentationDataset, find_samples, load_sample
from .transforms import XrayAugment

__all__ = ["SPLITS", "Sample", "SegmentationDataset", "find_samples", "load_sample", "XrayAugment"]
