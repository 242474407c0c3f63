"""fastpoly/backends/cuda"""
