"""devdax.spec"""
