"""What two or more method families share: the training loop (:mod:`~harness.toolkit.train`),
batched augmentation (:mod:`~harness.toolkit.augment`), networks by name
(:mod:`~harness.toolkit.models`), the pre-training cache (:mod:`~harness.toolkit.pretrain`) and the
supervised recipe (:mod:`~harness.toolkit.recipes`). Code used by one family lives in its package."""
