"""Studies built on the phases: the paper reproduced, the confound audit, comparisons and reports."""
