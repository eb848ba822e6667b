"""Offline evaluation harness: metrics, reproducible splits, baselines and the static protocol.

``metrics`` defines every number we report; ``protocols`` turns interactions into train data plus
held-out items and turns any model into full-ranking top-k lists; ``baselines`` holds the reference
models behind one ``fit`` / ``recommend`` interface; ``static`` runs them all on one split;
``lastfm`` reads the HetRec Last.fm files in place.
"""
