"""Pieces every training stage shares: checkpoints that resume exactly, RNG state, schedules.

Exact resume rests on two habits:

1. every random draw of step ``k`` comes from :func:`step_generator` ``(seed, k, rank)`` (crops,
   augmentation, noise), so nothing depends on how many draws earlier steps made; and
2. the batch order depends only on ``(seed, epoch)`` (:class:`~dvcli.training.distributed.DistributedBucketSampler`),
   so a run resumed at step ``k`` sees the batches the uninterrupted run would have seen.

What is left (model, optimizer, scheduler, scaler states, and the global RNGs that library code may
touch, e.g. dropout) goes into the checkpoint and comes back with :meth:`CheckpointManager.load`.
"""
