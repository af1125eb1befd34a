"""Named constants shared by the library and its experiments (one home each)."""

AUTHORS_LR = 0.04
"""The learning rate of Zhang, Latham & Saxe's (2024) experiments (their code's default): a
gradient-descent run of n epochs corresponds to gradient-flow time t = n * AUTHORS_LR
(Zhang et al. 2024, Sec. 2; docs/theory.md §7)."""
