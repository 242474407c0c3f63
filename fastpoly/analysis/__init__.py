"""Research analysis of counted functions: pure functions of keys and counts (no file I/O).

* :mod:`.stats` -- binomial intervals (Wilson, Clopper--Pearson);
* :mod:`.complexity` -- K_LZ, entropy, T, critical sample ratio;
* :mod:`.conditioning` -- offline conditioning, posterior summaries, generalisation errors;
* :mod:`.figures` -- rank, complexity, ones and error figures.
"""
