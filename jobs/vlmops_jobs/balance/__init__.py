"""BalancedCorpus job: concept retrieval (faiss) and MetaCLIP / inverse-frequency balancing."""
