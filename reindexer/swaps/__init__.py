"""Blue/green swaps: a swap job builds `ALIAS__<job id>` while `ALIAS` serves readers, verifies it
(the cutover gate), then moves the alias to it; rollback and prune walk the alias's history.

- names.py: the collection a swap job writes, what an alias serves now, a store's identity;
- gate.py: the cutover gate (verify, count, canary) and its JSON;
- cutover.py: moving the alias for a job, dropping a failed or discarded job's collection;
- history.py: the AliasMove history, read for rollback;
- actions.py: what operators do (approve, discard, rollback, prune);
- overview.py: every alias, for the aliases page and the API.
"""
