"""services/reporting"""
