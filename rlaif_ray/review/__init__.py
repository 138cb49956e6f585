"""Human review: the queue of items whose verdict did not stand, people's verdicts as rows
of the verdict table, the review page, judges measured against people, and the files of
the labelling tools."""
