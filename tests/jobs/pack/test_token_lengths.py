"""Image tokens as Qwen2-VL counts them (the packer's and the trainer's shared rule)."""
from __future__ import annotations

from vlmops_jobs.pack.token_lengths import image_tokens, smart_resize


def test_image_sizes_and_token_counts_follow_the_qwen2_vl_rule():
    assert smart_resize(28, 28) == (56, 56)  # below min_pixels -> scaled up
    assert smart_resize(224, 224) == (224, 224)
    h, w = smart_resize(4000, 3000, max_pixels=2560000)
    assert h % 28 == 0 and w % 28 == 0 and h * w <= 2560000
    assert image_tokens(224, 224) == 64
    assert image_tokens(32, 32) == 4
