from scheduling.cli import JobCommand


class Command(JobCommand):
    job_name = "process-campaigns"
