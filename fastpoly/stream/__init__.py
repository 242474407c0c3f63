"""fastpoly/stream"""
