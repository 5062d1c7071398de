"""devdax.model"""
