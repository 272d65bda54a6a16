"""The validator daemon: election by bonded stake, sampling, checks, strike reports, bans and settlement."""
