"""Campaigns: accounts run by one operator, found from the evidence they share.

- :mod:`detector.campaigns.linkage`: evidence per account and weighted edges between accounts;
- :mod:`detector.campaigns.grouping`: connected components and what each campaign shares;
- :mod:`detector.campaigns.scoring`: campaign scores, evidence sentences and members' lift.
"""
