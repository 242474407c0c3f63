"""fastpoly/cli"""
