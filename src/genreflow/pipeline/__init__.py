"""The stages that span packages.

Train (load, fit, log, export), evaluate (score, gate, report, index), and what follows a
champion move.
"""
