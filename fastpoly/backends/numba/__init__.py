"""fastpoly/backends/numba"""
