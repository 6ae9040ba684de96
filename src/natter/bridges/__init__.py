"""Bridges: processes that carry chat between natter rooms and other networks.

* :mod:`natter.bridges.irc` — IRC lines with IRCv3 tags (parser and formatter).
* :mod:`natter.bridges.twitch` — Twitch chat (IRC) into a room, and optionally back.
"""
