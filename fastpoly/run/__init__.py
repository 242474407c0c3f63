"""Running an estimator: rejection sampling, P_SGD training or GP draws, all through one driver.

The run options, validated once (:mod:`.options`), the plan protocol of the three estimators
(:mod:`.plans`), a job bundling them (:mod:`.job`), the one batch loop (:mod:`.batches`), the driver
(:mod:`.driver`) shared by plain, checkpointed (:mod:`.checkpoint`) and Dask (:mod:`.distributed`) runs.
"""
