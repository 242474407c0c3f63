"""fastpoly/run"""
