"""devdax.impl"""
