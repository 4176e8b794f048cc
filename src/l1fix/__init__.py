"""l1fix: safe, journaled level-1 helpdesk fixes."""
