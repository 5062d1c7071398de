"""devdax.proofs"""
