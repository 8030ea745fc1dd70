"""nrsfm"""
