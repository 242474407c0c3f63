"""Worked experiments that combine the estimators (runnable as ``python -m fastpoly.experiments.<name>``).

They sit above every estimator room (``gp``, ``sgd``), so those rooms stay independent of each other:

* :mod:`fastpoly.experiments.gp_digits`: the NNGP marginal likelihood
  (EP / tilting orthants) and PAC-Bayes bound on scikit-learn's 8x8 digits, and P_B^GP of the functions SGD finds.
"""
