def login_identifier(request, credentials):
    """The account an attempt was aimed at, for django-axes.

    allauth authenticates with `email=`, which axes does not look for by default; without this,
    axes would lock out by address alone and never see which account was being guessed.
    """
    credentials = credentials or {}
    value = credentials.get("email") or credentials.get("username") or credentials.get("login")
    if not value and request is not None:
        value = request.POST.get("login")
    return (value or "").strip().lower() or None
