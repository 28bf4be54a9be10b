"""PackedDataset job: token lengths, best-fit-decreasing plan, Energon/WebDataset shards."""
