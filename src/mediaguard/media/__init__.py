"""Media intake: the guarded URL fetcher and the single decode every signal shares."""
