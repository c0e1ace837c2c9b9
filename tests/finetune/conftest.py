"""Shared fixtures of the fine-tuning tests: a small clean benchmark from the embedded demo set (no downloads)."""

from __future__ import annotations

import os
import shutil

import pytest

#: a 64-px transformers-SamModel MedSAM with 2 encoder blocks (tests only)
TINY_MEDSAM = '{"size": "tiny", "image_size": 64}'


@pytest.fixture(scope="session")
def demo_bench(tmp_path_factory):
    """``clean`` with 12 train, 4 validation and 4 test demo images (256 px, ten modalities mixed)."""
    from medfm_hf.dataset_io import write_clean_config
    from medfm_hf.sources.demo import load_demo

    out = tmp_path_factory.mktemp("ftbench") / "bench"
    recs = load_demo("train")[::5]  # 12 images, every modality
    recs += load_demo("validation")[::5]
    recs += load_demo("test")[::15]
    write_clean_config(recs, str(out))
    return str(out)


@pytest.fixture(scope="session")
def poisoned_bench(demo_bench, tmp_path_factory):
    """``demo_bench`` whose test split and perturbed config are garbage bytes: reading them raises."""
    out = tmp_path_factory.mktemp("poisoned") / "bench"
    shutil.copytree(demo_bench, out)
    test_file = out / "data" / "clean" / "test-00000-of-00001.parquet"
    assert test_file.exists()
    test_file.write_bytes(b"POISON: the test split must never be read by fine-tuning")
    pert = out / "data" / "gaussian_noise_l1"
    pert.mkdir()
    (pert / "test-00000-of-00001.parquet").write_bytes(b"POISON")
    return str(out)


def tiny_args(dataset: str, output: str, **kw):
    from medfm_hf.finetune.args import FinetuneArguments

    base = dict(model="medsam", model_kwargs=TINY_MEDSAM, dataset=dataset, output=str(output), image_size=64,
                batch_size=4, max_steps=4, eval_steps=2, learning_rate=3e-3, no_progress=True, encoder_blocks=1,
                box_jitter=0.0)
    base.update(kw)
    return FinetuneArguments(**base)


@pytest.fixture()
def make_args():
    return tiny_args


@pytest.fixture()
def repo_root():
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
