"""Campaign bodies are Django templates over one recipient's fields.

The engine has no template directories and no tag libraries beyond Django's built-ins, and
autoescape is off: an SMS and an email's text part are plain text, where HTML escaping would
turn "O'Brien" into "O&#x27;Brien". The context holds only the recipient's own fields.
"""

from django.template import Context, Engine, Template

from campaigns.models import CampaignRecipient, PendingRecipient

ENGINE = Engine(autoescape=False)


def compile_template(text: str) -> Template:
    """The compiled template; django.template.TemplateSyntaxError when it does not compile."""
    return ENGINE.from_string(text)


def render_for(template: Template, recipient: CampaignRecipient | PendingRecipient) -> str:
    return template.render(Context(recipient.template_context(), autoescape=False)).strip()
