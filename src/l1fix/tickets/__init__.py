"""Ticket systems that receive l1fix followups, escalations and closings (GLPI first)."""
