"""Running a sampling job.

Validation (:mod:`.job`), the one batch loop (:mod:`.batches`), the driver
(:mod:`.driver`) shared by plain, checkpointed (:mod:`.checkpoint`) and Dask (:mod:`.distributed`) runs.
"""
