"""fastpoly/analysis"""
