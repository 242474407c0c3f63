"""Worked experiments that combine the estimators (runnable as ``python -m fastpoly.experiments.<name>``).

They sit above every estimator room (``gp``, ``sgd``), so those rooms stay independent of each other:

* :mod:`fastpoly.experiments.gp_digits`: the NNGP marginal likelihood
  (EP / tilting orthants) and PAC-Bayes bound on scikit-learn's 8x8 digits, and P_B^GP of the functions SGD finds;
* :mod:`fastpoly.experiments.psgd_vs_gp`: the paper's comparison of log P_SGD(f|S) and log P_B^GP(f|S)
  per optimizer on real images (``fastpoly experiment psgd-vs-gp``).

The CLI sits above this layer (``fastpoly experiment`` calls into it).
"""
