"""services/followup"""
