# Placeholder: the QAT experiment (issue 6) replaces this file with the real rules.
