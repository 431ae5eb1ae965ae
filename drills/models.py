# Drills, exercises and certifications arrive with the training issue.
