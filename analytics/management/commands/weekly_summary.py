from scheduling.cli import JobCommand


class Command(JobCommand):
    job_name = "weekly-summary"
