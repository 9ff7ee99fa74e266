"""services/routing"""
