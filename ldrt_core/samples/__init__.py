"""Synthetic sample papers with ground truth: `write_sample_corpus(out_dir, papers, seed)`."""

from ldrt_core.samples.corpus import SamplePaper, write_sample_corpus

__all__ = ["SamplePaper", "write_sample_corpus"]
