"""Complaint cases (reklamationsärenden): detecting case refs, linking threads to cases."""
